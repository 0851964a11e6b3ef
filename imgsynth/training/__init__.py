"""imgsynth.training"""
