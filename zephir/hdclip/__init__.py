"""HD-CLIP: hierarchical degradation CLIP (paper, section 3.1).

A frozen CLIP gives the semantic embedding; a trainable copy of its vision tower gives the
degradation embedding, read by four heads in a composition ordinal text space.
"""
