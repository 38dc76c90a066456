"""Users: registration, credentials (password, PIN), KYC decisions."""
