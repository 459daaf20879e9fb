"""slife: single-life learning. Mine view pairs from one person's egocentric video, train CroCo on
them as a stream, and measure what the encoder learned (CAS, depth probe, correspondence).

Data flows one way, one package per arrow (see README, "Layout"):
lives (readers -> Life) -> pairmine (Life -> pair shards) -> train (shards -> checkpoint)
-> eval (checkpoints -> reports); synth writes life folders; cli sits on top.
"""

__version__ = "0.1.0"
