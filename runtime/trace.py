"""Pictures of a pipeline step: Chrome trace JSON and a Gantt chart.

Reads the `TraceEvent`s of a traced step (`PipelineExecutable(..., trace=True)`: one
event per fragment run and per transfer, on the mesh that runs or receives it, with
start and end in seconds from the step's start). Writes

- `chrome_trace(events, mesh_names)`: the Chrome trace event format (load it in
  chrome://tracing or Perfetto): one row ("thread") per mesh, one complete event
  (`ph: "X"`, microseconds) per box, its bytes for transfers;
- `gantt(events, mesh_names, path)`: the same boxes drawn with matplotlib, one row per
  mesh, forward / backward / apply / transfer in different colours.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alpa_mlir.dialect_utils.output_files import write_atomically

from .pipeline import TraceEvent

COLOURS = {"forward": "#4c72b0", "backward": "#dd8452", "apply": "#55a868", "transfer": "#8172b2"}
OTHER = "#999999"


def _category(name: str) -> str:
    return name.split()[0] if name.split() and name.split()[0] in COLOURS else "other"


def chrome_trace(events: Sequence[TraceEvent], mesh_names: Sequence[str]) -> dict[str, Any]:
    out: list[dict[str, Any]] = [
        {"name": "thread_name", "ph": "M", "pid": 0, "tid": k, "args": {"name": f"mesh {name}"}}
        for k, name in enumerate(mesh_names)
    ]
    for e in events:
        out.append({
            "name": e.name, "cat": _category(e.name), "ph": "X", "pid": 0, "tid": e.mesh,
            "ts": e.start * 1e6, "dur": max(e.end - e.start, 0.0) * 1e6,
            "args": {"bytes": e.bytes_moved} if e.bytes_moved else {},
        })
    return {"traceEvents": out, "displayTimeUnit": "ms"}


def write_chrome_trace(events: Sequence[TraceEvent], mesh_names: Sequence[str], path: str | Path) -> None:
    write_atomically(path, json.dumps(chrome_trace(events, mesh_names), indent=1) + "\n")


def gantt(events: Sequence[TraceEvent], mesh_names: Sequence[str], path: str | Path,
          title: str = "pipeline step") -> None:
    """A PNG (or any format matplotlib infers from `path`) of the step's schedule."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError as missing:  # an optional dependency
        raise RuntimeError("--gantt needs matplotlib (pip install 'alpa-mlir[plot]')") from missing
    fig, ax = plt.subplots(figsize=(12, 1 + 0.6 * len(mesh_names)))
    for e in events:
        colour = COLOURS.get(_category(e.name), OTHER)
        ax.barh(e.mesh, (e.end - e.start) * 1e3, left=e.start * 1e3, height=0.6,
                color=colour, edgecolor="black", linewidth=0.3)
    ax.set_yticks(range(len(mesh_names)), [f"mesh {n}" for n in mesh_names])
    ax.invert_yaxis()
    ax.set_xlabel("time (ms)")
    ax.set_title(title)
    ax.legend(handles=[Patch(color=c, label=k) for k, c in COLOURS.items()], loc="upper left",
              bbox_to_anchor=(1.0, 1.0), fontsize="small")
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=120)
    plt.close(fig)
    write_atomically(path, image.getvalue())
