-- A replayed dead letter is for the consumer that gave up on it only: `target` names that
-- consumer group (NULL: every group). Other groups acknowledge the message and skip it.
ALTER TABLE outbox ADD COLUMN target TEXT;

-- Retention keeps the inbox rows of events that have a dead letter (`prune_events`).
CREATE INDEX dead_letters_by_event ON dead_letters (event_id);
