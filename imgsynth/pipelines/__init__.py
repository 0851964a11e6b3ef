"""imgsynth.pipelines"""
