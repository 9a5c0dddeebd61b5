-- The log's bodies without the messageId and timestamp their row holds
-- (crates/store/src/sqlite/bodies.rs; docs/performance.md, session 43):
-- from this version on `events.body` is the normalised message's JSON
-- without its `messageId` and `timestamp` members, which `message_id` and
-- `ts` hold, and readers put them back. Rows written before keep their
-- whole body and are read as they are, so nothing is rewritten here. The
-- version is recorded so that an earlier leadscore, which would read a
-- compact body as a message without them, refuses the store instead.
SELECT 1;
