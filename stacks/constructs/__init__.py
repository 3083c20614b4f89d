"""The parts the export stack is built from.

The functions and the layer are constructs of their own, as they always were (Functions/..., Dependencies/...).
Storage, permissions, the state machine, the schedule and the outputs are made by `add_*` functions directly in
the stack, where deployed stacks have them: nesting them would change their logical IDs, and CloudFormation
replaces a resource whose logical ID changed (tests/infra/test_logical_ids.py).
"""
