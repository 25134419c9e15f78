"""The node agent: desired state from the sources, the pure planner, the per-owner workers that execute
its actions, pod config, volumes, probes, image pulls, the reconcile loop, status, events and labels.
"""
