"""Executors put each planned Run where vLLM is: here (local), in a container, or on Kubernetes."""
