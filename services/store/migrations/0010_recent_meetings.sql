-- Whom a user met lately (services/store/meetings.py), read when their session opens:
-- each side's calls newest first. They replace the single-column indexes, which they cover.
CREATE INDEX calls_user_a_created ON calls (user_a, created_at DESC);
CREATE INDEX calls_user_b_created ON calls (user_b, created_at DESC);
DROP INDEX calls_user_a;
DROP INDEX calls_user_b;
