"""The image a docker run uses: a catalog variant built or an image pulled, with progress events."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.errors import BenchError, PreflightError
from runner.executors.base import Event, EventSink
from runner.images import docker_ops
from runner.images.catalog import Variant, load_catalog
from runner.images.render import default_tag

PULL_POLICIES = ("always", "missing", "never")


def _pull_event(ref: str, event: docker_ops.PullEvent) -> Event:
    return {"event": "image_pull", "image": ref, "status": event.status, "layer": event.layer,
            "current": event.current, "total": event.total}  # fmt: skip


def image_event_line(event: Mapping[str, Any]) -> str | None:
    """A line for people from an image event; None for per-layer download progress."""
    kind = event.get("event")
    if kind == "image_build":
        return f"  {event.get('line')}"
    if kind == "image_pull":
        status = str(event.get("status") or "")
        if event.get("layer") and status != "Pull complete":
            return None
        layer = f" {event['layer']}" if event.get("layer") else ""
        return f"  pull {event.get('image')}{layer}: {status}"
    if kind == "image_ready":
        return f"image {event.get('image')} ready ({event.get('how')}, {event.get('id')})"
    return None


class ImageResolver:
    """The image named by --image: a catalog variant's tag (built here) or any image (pulled)."""

    def __init__(
        self,
        choice: str,
        pull: str,
        *,
        base_image: str | None = None,
        wheelhouse: Path | None = None,
        pip_extra_index_url: str | None = None,
    ) -> None:
        self.choice = choice
        self.pull = pull
        self.base_image = base_image
        self.wheelhouse = wheelhouse
        self.pip_extra_index_url = pip_extra_index_url
        self._ref: str | None = None
        self._variant: Variant | None = None

    def ref(self) -> str:
        """The image to run: a catalog variant's built tag, or the image named."""
        if self._ref is None:
            catalog = load_catalog()
            self._variant = catalog.get(self.choice)
            variant = self._variant
            self._ref = default_tag(variant, self.base_image) if variant else self.choice
        return self._ref

    def resolve(self, api: Any, emit: EventSink) -> str:
        """The image on the engine: a variant built (absent, or --pull always), an image pulled."""
        ref = self.ref()
        present = True
        try:
            docker_ops.inspect_image(api, ref)
        except docker_ops.ImageMissing:
            present = False
        if self._variant is not None:
            how = self._variant_image(api, self._variant, ref, present, emit)
        else:
            how = self._pulled_image(api, ref, present, emit)
        info = docker_ops.inspect_image(api, ref)
        emit({"event": "image_ready", "image": ref, "id": info.id, "how": how})
        return ref

    def _variant_image(
        self, api: Any, variant: Variant, ref: str, present: bool, emit: EventSink
    ) -> str:
        # A variant's tag is made here, never pulled: building it is its "pull".
        if not present and self.pull == "never":
            raise docker_ops.ImageMissing(
                f"image {ref} (variant {variant.name}) is not built on this engine and "
                f"--pull never forbids building it: bench-images build {variant.name}"
            )
        if self.pull == "always" or not present:
            self._build_variant(api, variant, ref, emit)
            return "built"
        return "present"

    def _pulled_image(self, api: Any, ref: str, present: bool, emit: EventSink) -> str:
        if self.pull == "always" or (not present and self.pull == "missing"):
            try:
                docker_ops.pull_image(api, ref, lambda e: emit(_pull_event(ref, e)))
            except docker_ops.PullFailed as exc:
                if not present:
                    raise docker_ops.ImageMissing(
                        f"image {ref} is not on this Docker engine and cannot be pulled "
                        f"({exc.reason}): pull or load it, or build one with bench-images build"
                    ) from exc
                raise
            return "pulled"
        if not present:
            raise docker_ops.ImageMissing(
                f"image {ref} is not on this Docker engine and --pull never forbids pulling it"
            )
        return "present"

    def _build_variant(self, api: Any, variant: Variant, ref: str, emit: EventSink) -> None:
        try:
            request = docker_ops.plan_build(
                variant,
                base=self.base_image,
                wheelhouse=self.wheelhouse,
                tag=ref,
                extra_index_url=self.pip_extra_index_url,
            )
        except BenchError as exc:  # a missing wheelhouse or index, said in bench-images' words
            raise PreflightError(
                f"image {ref} (variant {variant.name}) must be built, but: {exc}"
            ) from exc
        step: str | None = None
        emit({"event": "image_build", "image": ref, "variant": variant.name, "step": step,
              "line": f"building {ref} FROM {request.base} (pull: {self.pull})"})  # fmt: skip

        def on_line(line: str) -> None:
            nonlocal step
            step = docker_ops.build_step(line) or step
            emit({"event": "image_build", "image": ref, "variant": variant.name, "step": step,
                  "line": line})  # fmt: skip

        # A failure raises BuildFailed: one line naming the failing step (its log went by above).
        docker_ops.build_image(
            api, request, on_line, on_pull=lambda e: emit(_pull_event(request.base, e))
        )
