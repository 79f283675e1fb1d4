"""bpfhol grader: runs students' bpftrace scripts on lab hosts and grades them against ground truth.

Layout (transport / knowledge / reporting kept apart):
  backend/   how we reach a lab host (SSH through Fabric, or local for the self-check)
  agent.py   what runs on the lab host, as root, through one sudo rule
  checks/    what a correct answer is (per check name used in labs/<lab>/lab.yaml)
  reports/   terminal table, Gradescope results.json, CSV gradebook, JUnit XML, HTML
"""

__version__ = "0.1.0"
