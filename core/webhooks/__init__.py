"""Partner webhooks: endpoints, an outbox of events, signed deliveries with retries."""
