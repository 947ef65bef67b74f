"""How codecs are judged: metrics, statistics over seeds, the comparison table, promotion, the gate."""
