"""Process-level helpers of an ingesting process: the allocator and the DB's writer lock.

``memory``       glibc malloc tuning, the heap trimmer thread and the RSS figure in health
``writer_lock``  one ingesting process per DB (an exclusive ``flock`` naming its holder)
"""
