"""Sample workloads shipped with tierline."""
