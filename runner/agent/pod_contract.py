"""What a Kubernetes pod and bench-run agree on: names, paths, the collection protocol.

Standard library only: the agent imports it inside the pod, the manifest renderer and the
Kubernetes executor on the host. Nothing here talks to a cluster.

- Each Indexed Job's per-index jobs travel in ConfigMaps mounted (projected) at JOBS_DIR; the
  agent started with `--jobs-dir JOBS_DIR` runs `job_file_name($JOB_COMPLETION_INDEX)`.
- The agent writes its run directory under RUNS_DIR (an emptyDir, or a PVC) as everywhere else.
- After its run, the agent holds the pod open and serves the run directory as a tar stream on
  COLLECT_PORT (reached through the API server's pod proxy: binary-safe, no exec, no logs):
  GET COLLECT_PATH_TAR returns it, POST COLLECT_PATH_DONE lets the pod end with the agent's exit
  status; nobody collecting within the hold time ends it too.
"""

from __future__ import annotations

JOBS_DIR = "/etc/vllm-bench/jobs"
RUNS_DIR = "/runs"
INDEX_VAR = "JOB_COMPLETION_INDEX"  # set by Kubernetes in every pod of an Indexed Job
COLLECT_PORT = 8089
COLLECT_PATH_TAR = "/run-dir.tar"
COLLECT_PATH_DONE = "/collected"
DEFAULT_HOLD_S = 3600  # how long a finished pod waits to be collected

# Labels and annotations on every object bench-run makes in a cluster.
LABEL_MANAGED = "vllm-bench/managed"  # "true"
LABEL_SWEEP = "vllm-bench/sweep"  # the sweep id: `bench-run k8s status|collect|cancel` find by it
ANNOTATION_RUN_IDS = "vllm-bench/run-ids"  # on a Job: a JSON list, run id by completion index
# set by Kubernetes on each pod of an Indexed Job, as a label (1.28+) and an annotation
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"


def job_file_name(index: int) -> str:
    """The key (and file name) of completion index `index`'s job in the jobs ConfigMaps."""
    return f"job-{index}.json"
