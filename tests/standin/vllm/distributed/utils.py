"`StatelessProcessGroup` as in vLLM 0.33 (distributed/utils.py:537-582): rank 0 hosts a TCP store on `host:port`."
from datetime import timedelta
import torch


class StatelessProcessGroup:
    def __init__(self, rank, world_size, store): self.rank, self.world_size, self.store = rank, world_size, store

    @staticmethod
    def create(host, port, rank, world_size, data_expiration_seconds=3600, store_timeout=300, listen_socket=None):
        # a second rank 0 on the same port fails here, as vLLM's listen socket does (address already in use)
        store = torch.distributed.TCPStore(host, port, world_size, is_master=rank == 0,
                                           timeout=timedelta(seconds=min(store_timeout, 60)), wait_for_workers=False)
        return StatelessProcessGroup(rank, world_size, store)
