"""Reconciliation with the correspondent bank: its statement (camt.053, BAI2, CSV) imported,
each line matched to a payout (settled, returned) or a customer's inbound reference (a deposit),
the rest left for an admin to resolve."""
