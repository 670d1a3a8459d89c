"""Attribution (`ggflip attribute`): which tensor groups of a quant do its damage, how much each
recovers when restored, and a recipe raising the best ones within a byte budget. Above the modes:
hybrids of the baseline and the quant are measured through the corpus or multiple-choice engine."""
