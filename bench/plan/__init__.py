"""`bench plan`: what each cell will do (workload), a cost model, and a measured calibration of this machine."""
