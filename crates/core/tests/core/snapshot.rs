//! Contact state snapshots: lossless for this model, safe on any bytes.

use leadscore_core::batch::contacts_as_of;
use leadscore_core::event::Message;
use leadscore_core::fold::ContactState;
use leadscore_core::time::Timestamp;
use proptest::prelude::*;

use crate::properties::{arb_message, models, START};

proptest! {
    #![proptest_config(crate::harness::cases(48))]

    #[test]
    fn encode_decode_roundtrips_and_continues_identically(
        messages in prop::collection::vec(arb_message(), 1..60),
        split in 0usize..60,
    ) {
        let t = Timestamp::from_seconds(START + 500 * 86_400);
        for model in models() {
            for contact in contacts_as_of(messages.clone(), Vec::new(), t) {
                let split = split.min(contact.messages.len());
                let (head, tail): (&[Message], &[Message]) = contact.messages.split_at(split);
                let state = ContactState::fold(&model, None, head);
                let bytes = state.encode(&model);
                let decoded = ContactState::decode(&model, &bytes, state.shared_traits().clone(), state.shared_company().clone()).unwrap();
                prop_assert_eq!(&decoded, &state);
                // Absorbing the rest into the decoded state equals the batch fold.
                let mut live = decoded;
                for m in tail {
                    live.absorb(&model, m).unwrap();
                }
                let batch = ContactState::fold(&model, None, &contact.messages);
                prop_assert_eq!(live.score_at(&model, t).unwrap(), batch.score_at(&model, t).unwrap());
            }
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        for model in models() {
            let _ = ContactState::decode(&model, &bytes, Default::default(), Default::default());
        }
    }
}

#[test]
fn snapshots_refuse_another_model() {
    let models = models();
    let state = ContactState::new(&models[0], None);
    let bytes = state.encode(&models[0]);
    let err = ContactState::decode(&models[1], &bytes, Default::default(), Default::default())
        .unwrap_err();
    assert!(err.to_string().contains("another model"), "{err}");
    assert!(ContactState::decode(
        &models[0],
        &bytes[..bytes.len() - 1],
        Default::default(),
        Default::default()
    )
    .is_err());
}
