"""The sweep engine: members, groups, the jitted vmapped step, the loop, checkpoints, workdir."""
