"""Model version rollouts: canary and shadow traffic, judging on the masks, promotion and rollback, replay."""
