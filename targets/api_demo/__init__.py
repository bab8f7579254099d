"""A small candidate-profile HTTP JSON API over SQLite, with knobs that change speed but not answers.

Modules: data (seeded database), config (knobs and their validation), server (the service),
reference (plain-Python answers), gold (the call set with expected hashes), service (one instance: its
own database copy). Starting, replaying, measuring and stopping are autoloop.services' job.
"""
