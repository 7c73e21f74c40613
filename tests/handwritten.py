"""A profile written by hand: three blocks measured by some other tool."""

CHAIN = {
    "format": "tiercut-profile/1",
    "model": "three-blocks",
    "host": {"name": "jetson-nano", "cpu": "ARM Cortex-A57", "threads": 4},
    "input_bytes": 602112,
    "outputs": ["head"],
    "nodes": [
        {"name": "stem", "inputs": [], "latency_s": 0.0123, "output_bytes": 802816},
        {"name": "body", "inputs": ["stem"], "latency_s": 0.0456, "output_bytes": 100352,
         "latency_spread_s": 0.0011},
        {"name": "head", "inputs": ["body"], "latency_s": 0.0021, "output_bytes": 4000},
    ],
}
