"""From transitions to pages: mute stages, incidents and routing turned into outbox rows.

Above the engine (which only knows the `Decider` protocol it calls) and the
router (which it asks who is told), below the notifiers (which deliver the
rows it decides).
"""
