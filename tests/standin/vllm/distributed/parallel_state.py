"`get_world_group()` of the stand-in's worker: one worker, rank 0 (a server with tensor_parallel_size=1)."
from types import SimpleNamespace


def get_world_group(): return SimpleNamespace(rank=0, world_size=1)
