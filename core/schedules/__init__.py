"""Scheduled and recurring transfers: each occurrence becomes one ordinary transfer."""
