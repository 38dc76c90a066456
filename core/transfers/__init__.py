"""Transfers: accepted by the API (submit), settled by a worker (settle), read back (queries)."""
