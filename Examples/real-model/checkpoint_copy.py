"""A copy of a checkpoint folder with its model.safetensors rewritten, written beside the target and
renamed into place when complete (the helpers in this folder that change weights use it)."""
import os
import shutil
import sys

from safetensors import safe_open
from safetensors.torch import save_file


def rewrite_weights(source, out, transform):
    """Writes `out` as `source` with every tensor t of model.safetensors replaced by
    transform(name, t) (a torch tensor); the other files are symlinked. Refuses an existing `out`."""
    if os.path.exists(out):
        sys.exit(f"{out} exists")
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for name in os.listdir(source):
        if name != "model.safetensors":
            os.symlink(os.path.abspath(os.path.join(source, name)), os.path.join(tmp, name))
    tensors = {}
    with safe_open(os.path.join(source, "model.safetensors"), "pt") as f:
        metadata = f.metadata()
        for k in f.keys():
            tensors[k] = transform(k, f.get_tensor(k)).contiguous()
    save_file(tensors, os.path.join(tmp, "model.safetensors"), metadata=metadata)
    os.rename(tmp, out)
