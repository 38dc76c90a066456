"""Partner webhooks: endpoints subscribed to domain events (core.events), signed deliveries with retries."""
