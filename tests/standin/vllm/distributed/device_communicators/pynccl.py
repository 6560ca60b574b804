"`PyNcclCommunicator` as in vLLM 0.33 (pynccl.py:95-99, 543-567); the bytes go through the group's TCP store."
import torch


class PyNcclCommunicator:
    def __init__(self, group, device):
        self.group, self.rank, self.world_size = group, group.rank, group.world_size
        self.device, self.n = torch.device(device), 0

    def broadcast(self, tensor, src, stream=None):
        assert tensor.device == self.device, (f"this nccl communicator is created to work on {self.device}, "
                                              f"but the input tensor is on {tensor.device}")
        if type(tensor) is not torch.Tensor or tensor.data_ptr() == 0:
            raise RuntimeError(f"ncclBroadcast from data_ptr {tensor.data_ptr()} ({type(tensor).__name__}): NCCL would "
                               "read a null pointer (a DTensor holds no local storage of the whole tensor)")
        if not tensor.is_contiguous():
            raise RuntimeError("ncclBroadcast of a non-contiguous tensor sends the wrong bytes")
        key, self.n = f"bcast/{self.n}", self.n + 1
        raw = tensor.view(-1).view(torch.uint8) if tensor.numel() else torch.empty(0, dtype=torch.uint8)
        if self.rank == src: self.group.store.set(key, raw.numpy().tobytes())
        else:
            data = self.group.store.get(key)
            if len(data) != raw.numel():
                raise RuntimeError(f"broadcast of {len(data)} bytes into a buffer of {raw.numel()}: "
                                   "shape or dtype mismatch")
            raw.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
