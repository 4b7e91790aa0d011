"""Renderers of a ContainerSpec, one module per target: docker_api (docker-py), docker_cli."""
