"""Security rules shared by every layer: bearer-token claims and the outbound URL rule. Pure
computation (no I/O), so the API, the clients, the store and the command line can all use
them without importing each other."""
