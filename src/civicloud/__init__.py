"""civicloud: a self-hostable government cloud."""
