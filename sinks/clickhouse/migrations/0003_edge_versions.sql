-- Versioned edges and cheaper inserts.

-- Each edge carries the version of its two endpoints as the event that asserted the edge states
-- them (for datasets: the version read or written), so provenance can follow a dataset version
-- to the run that produced it. Edges stored before this migration have '' (version unknown):
-- the queries then follow the latest producing run as of the reading event's time.
ALTER TABLE edges ADD COLUMN IF NOT EXISTS src_version String DEFAULT '' AFTER run_id;
ALTER TABLE edges ADD COLUMN IF NOT EXISTS dst_version String DEFAULT '' AFTER src_version;

-- Parts written by an insert stay compact (one data file instead of two per column) until merges
-- grow them past 256 MiB: creating files was a fifth of the sink's insert time.
ALTER TABLE raw_events MODIFY SETTING min_bytes_for_wide_part = 268435456;
ALTER TABLE edges MODIFY SETTING min_bytes_for_wide_part = 268435456;
ALTER TABLE nodes MODIFY SETTING min_bytes_for_wide_part = 268435456;
