#!/bin/bash
# GRPO on N nodes x M GPUs with Slurm: one launcher per node, one process per GPU (chapter 7, "Launching").
#   sbatch --nodes 2 --gpus-per-node 8 scripts/slurm_r1.sh configs/qwen2.5-1.5b-2node.yaml [key=value ...]
#   LAUNCHER=accelerate sbatch ... scripts/slurm_r1.sh CONFIG     # accelerate launch instead of torchrun
#   ACCELERATE_CONFIG=configs/accelerate/fsdp2.yaml LAUNCHER=accelerate sbatch ...   # FSDP2 instead of DDP
# output_dir, the Hugging Face cache and this repository must be on a filesystem every node sees.
#SBATCH --job-name=r1-grpo
#SBATCH --ntasks-per-node=1          # one launcher per node; it starts the GPU processes itself
#SBATCH --exclusive
#SBATCH --output=%x-%j.out
set -euo pipefail

CONFIG=${1:?usage: sbatch scripts/slurm_r1.sh CONFIG.yaml [key=value ...]}; shift
LAUNCHER=${LAUNCHER:-torchrun}
ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-configs/accelerate/ddp.yaml}
NNODES=${SLURM_JOB_NUM_NODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(nvidia-smi -L | wc -l)}
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MASTER_PORT=${MASTER_PORT:-29500}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1   # a failed NCCL collective raises instead of hanging (dist_timeout_s bounds the wait)

echo "nodes=$NNODES gpus/node=$GPUS_PER_NODE master=$MASTER_ADDR:$MASTER_PORT launcher=$LAUNCHER config=$CONFIG"

# srun starts one copy per node; SLURM_NODEID (0..N-1) is that node's rank, so it is read on the node (single quotes).
# The config and key=value arguments travel as the inner bash's "$@": a value with spaces stays one argument.
export NNODES GPUS_PER_NODE MASTER_ADDR MASTER_PORT ACCELERATE_CONFIG   # srun passes the environment to the node
if [ "$LAUNCHER" = torchrun ]; then
    srun --kill-on-bad-exit=1 bash -c 'torchrun --nnodes "$NNODES" --nproc_per_node "$GPUS_PER_NODE" \
        --node_rank "$SLURM_NODEID" --rdzv_backend c10d --rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT" \
        --rdzv_id "$SLURM_JOB_ID" -m r1_ref.cli train "$@"' bash "$CONFIG" "$@"
else
    srun --kill-on-bad-exit=1 bash -c 'accelerate launch --config_file "$ACCELERATE_CONFIG" \
        --num_machines "$NNODES" --num_processes $((NNODES * GPUS_PER_NODE)) --machine_rank "$SLURM_NODEID" \
        --main_process_ip "$MASTER_ADDR" --main_process_port "$MASTER_PORT" --rdzv_backend c10d --same_network \
        -m r1_ref.cli train "$@"' bash "$CONFIG" "$@"
fi
