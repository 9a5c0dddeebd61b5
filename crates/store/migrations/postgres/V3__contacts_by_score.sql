-- Leaderboards and score segments read contacts in score order.
CREATE INDEX contacts_score ON contacts (score, id);
