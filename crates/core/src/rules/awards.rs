//! Decaying, capped sums of awards (shared by engagement and streak rules).

use crate::time::Timestamp;

/// The awards a rule gave one contact, summarised in O(1) space: the sum is
/// kept as its value at the last award and decayed forward on demand.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Awards {
    /// Number of awards.
    pub count: u32,
    /// Decayed sum as of `at`.
    pub sum_at_last: f64,
    /// Sum of the awards' points before decay.
    pub undecayed: f64,
    /// Time of the first award.
    pub first: Timestamp,
    /// Time of the last award.
    pub last: Timestamp,
}

/// `points * 0.5^(elapsed / half_life)`; no decay when `half_life` is `None`.
pub fn decay(points: f64, elapsed_seconds: f64, half_life_seconds: Option<f64>) -> f64 {
    match half_life_seconds {
        Some(h) => points * (-elapsed_seconds / h).exp2(),
        None => points,
    }
}

impl Awards {
    /// Adds an award of `points` at `at` (not earlier than the last award).
    pub fn add(&mut self, points: f64, at: Timestamp, half_life: Option<f64>) {
        if self.count == 0 {
            self.first = at;
            self.sum_at_last = points;
        } else {
            self.sum_at_last =
                decay(self.sum_at_last, at.seconds_since(self.last), half_life) + points;
        }
        self.last = at;
        self.count += 1;
        self.undecayed += points;
    }

    /// The most the rule can contribute at any time after its last award:
    /// decay only moves the sum toward zero.
    pub fn upper_bound(&self, cap: Option<f64>) -> f64 {
        let most = self.sum_at_last.max(0.0);
        cap.map_or(most, |cap| most.min(cap))
    }

    /// The rule's contribution at `t` (>= last award): decayed, then clamped
    /// to `[-cap, cap]`.
    pub fn value_at(&self, t: Timestamp, half_life: Option<f64>, cap: Option<f64>) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let value = decay(self.sum_at_last, t.seconds_since(self.last), half_life);
        match cap {
            Some(cap) => value.clamp(-cap, cap),
            None => value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn decays_by_half_per_half_life() {
        let mut a = Awards::default();
        let h = Some(10.0 * DAY as f64);
        a.add(20.0, Timestamp::from_seconds(0), h);
        assert_eq!(a.value_at(Timestamp::from_seconds(10 * DAY), h, None), 10.0);
        a.add(20.0, Timestamp::from_seconds(10 * DAY), h);
        // 20 * 0.5^2 + 20 * 0.5 at day 20
        let v = a.value_at(Timestamp::from_seconds(20 * DAY), h, None);
        assert!((v - 15.0).abs() < 1e-12, "{v}");
        assert_eq!(a.undecayed, 40.0);
    }

    #[test]
    fn caps_apply_after_decay_and_to_negative_totals() {
        let mut a = Awards::default();
        for i in 0..5 {
            a.add(-10.0, Timestamp::from_seconds(i), None);
        }
        assert_eq!(
            a.value_at(Timestamp::from_seconds(9), None, Some(25.0)),
            -25.0
        );
        let mut b = Awards::default();
        let h = Some(DAY as f64);
        b.add(40.0, Timestamp::from_seconds(0), h);
        assert_eq!(b.value_at(Timestamp::from_seconds(0), h, Some(25.0)), 25.0);
        assert_eq!(
            b.value_at(Timestamp::from_seconds(DAY), h, Some(25.0)),
            20.0
        );
    }
}
