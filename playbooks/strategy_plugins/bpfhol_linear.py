"""The lab playbook's strategy: Mitogen for Ansible's linear strategy when Mitogen is installed, else Ansible's.

Why: with Ansible's own strategy every task starts a new Python in the guest and ships its module over SSH.
Under qemu's TCG emulation (no usable KVM) a Python start costs seconds, so a second provision that changes
nothing took 441-522 s for ~66 tasks.  Mitogen keeps one Python per host for the whole play and runs the
modules inside it.  Without Mitogen (e.g. Vagrant's ansible_local provisioner in the guest) this is plain
`linear`, so the playbook never depends on it.  Chosen in ansible.cfg (strategy = bpfhol_linear).
"""

try:
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy
except ImportError:
    from ansible.plugins.strategy.linear import StrategyModule  # noqa: F401
else:
    _Linear = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Linear):
        """Ansible's linear strategy, with Mitogen's connection and module runner mixed in."""
