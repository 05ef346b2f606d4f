"""Pure domain rules: job states, error codes, retry policy. No I/O imports here."""
