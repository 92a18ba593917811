"""Capability vectors: encoders, hardware and skill blocks, the match score phi, privacy noise.

Pure: no I/O (bar ``EmbeddingTagEncoder`` loading its model on first use), no async; random
generators are passed in. See ``symphony.capability.vector`` for the vector layout.
"""

from symphony.capability.vector import (
    ACCELERATOR_KINDS,
    HARDWARE,
    HARDWARE_DIMS,
    SKILL_ALPHA,
    SKILL_DIMS,
    SKILLS,
    TAG_DIMS,
    TAGS,
    TASK_TYPES,
    VECTOR_DIMS,
    EmbeddingTagEncoder,
    HashingTagEncoder,
    SkillScores,
    TagEncoder,
    Vector,
    accelerator_kind,
    add_privacy_noise,
    capability_vector,
    classify_task_type,
    encode_hardware,
    gaussian_projection,
    phi,
    requirement_vector,
    task_type_index,
)

__all__ = [
    "ACCELERATOR_KINDS",
    "HARDWARE",
    "HARDWARE_DIMS",
    "SKILLS",
    "SKILL_ALPHA",
    "SKILL_DIMS",
    "TAGS",
    "TAG_DIMS",
    "TASK_TYPES",
    "VECTOR_DIMS",
    "EmbeddingTagEncoder",
    "HashingTagEncoder",
    "SkillScores",
    "TagEncoder",
    "Vector",
    "accelerator_kind",
    "add_privacy_noise",
    "capability_vector",
    "classify_task_type",
    "encode_hardware",
    "gaussian_projection",
    "phi",
    "requirement_vector",
    "task_type_index",
]
