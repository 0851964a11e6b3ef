"""imgsynth.engine"""
