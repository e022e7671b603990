"""Kernels as Slurm jobs: a jupyter_client kernel provisioner (``kernelsdk-slurm``) that runs
any kernelsdk kernelspec, single-process or an MPI variant, on an HPC cluster's compute nodes
from a Jupyter server on a login node. ``python -m kernelsdk install KERNEL --slurm`` writes
such kernelspecs; see docs/hpc.md.

Internal modules: ``_provisioner`` (the provisioner), ``_sbatch`` (the batch script; sbatch,
squeue, scancel), ``_registrar`` (the JEP 66 registrar), ``_job`` (the job's side: walltime
warning and idle limit).
"""
