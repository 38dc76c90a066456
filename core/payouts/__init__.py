"""Money leaving the bank: counterparties (where it goes) and payouts (later: pain.001 files)."""
