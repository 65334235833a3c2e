"""Real Redis servers for the tests (filled in by the Redis store work)."""
