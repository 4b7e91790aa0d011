"""Docker engine tier: a real daemon (the image and docker executor tests)."""
