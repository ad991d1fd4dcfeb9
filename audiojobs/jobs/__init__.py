"""Job state: the jobs table is the source of truth of every job."""
