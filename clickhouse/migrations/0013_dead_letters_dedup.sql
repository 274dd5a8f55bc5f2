-- The sink writes a row the warehouse refused to dead_letters under a deterministic token (the
-- piece of the batch it came from), so a batch re-read after a crash must add no second dead
-- letter: like every other table the sink writes, dead_letters keeps the last tokens it saw.
ALTER TABLE dead_letters MODIFY SETTING non_replicated_deduplication_window = 1000;
