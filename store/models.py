"""The database: SQLAlchemy 2 models of patients, their images, links, shares and the access log.

Every query that returns images takes the asking patient and filters by it; nothing here widens a
query beyond one patient. Schema changes go through Alembic (``store/migrations``).

Identifiers: rows have integer primary keys for joins and an opaque ``public_id`` (random hex) where
the id leaves the database (callback data, log lines, share ids), so ids cannot be enumerated.
"""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_public_id() -> str:
    """An opaque, unguessable id for use outside the database (128 bits, hex)."""
    return secrets.token_hex(16)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with stable constraint names (Alembic needs them on SQLite)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Patient(Base):
    """A person whose images Lightbox keeps. Name and birth date are PHI: never log them."""

    __tablename__ = "patient"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    name: Mapped[str] = mapped_column(String(512), default="")
    birth_date: Mapped[str] = mapped_column(String(16), default="")
    sex: Mapped[str] = mapped_column(String(16), default="")
    # What the patient wants others (a share viewer) to see instead of their name.
    display_label: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    identifiers: Mapped[list[PatientIdentifier]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", passive_deletes=True
    )
    studies: Mapped[list[Study]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", passive_deletes=True
    )


class PatientIdentifier(Base):
    """A Patient ID as one source knows it (issuer '' for a CD or upload without an issuer)."""

    __tablename__ = "patient_identifier"
    __table_args__ = (UniqueConstraint("issuer", "value", name="uq_patient_identifier_issuer_value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"), index=True)
    issuer: Mapped[str] = mapped_column(String(128), default="")
    value: Mapped[str] = mapped_column(String(128))

    patient: Mapped[Patient] = relationship(back_populates="identifiers")


class ChatLink(Base):
    """A Telegram user linked to a patient, with their chat preferences."""

    __tablename__ = "chat_link"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    telegram_user_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"), index=True)
    # '' until the patient picks one with /language (then the Telegram app's language is used).
    language: Mapped[str] = mapped_column(String(8), default="")
    # The Telegram app's language as last seen (when Lightbox speaks it), for messages that answer no
    # update of the patient's, such as "your link was opened just now".
    app_language: Mapped[str] = mapped_column(String(8), default="", server_default="")
    protect_content: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LinkCode(Base):
    """A one-time code for the ``/start <code>`` deep link; only its SHA-256 is stored."""

    __tablename__ = "link_code"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Study(Base):
    """One imaging study (DICOM Study), belonging to exactly one patient."""

    __tablename__ = "study"
    __table_args__ = (Index("ix_study_patient_date", "patient_id", "study_date"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"))
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    study_time: Mapped[str] = mapped_column(String(16), default="")
    description: Mapped[str] = mapped_column(String(256), default="")
    # Modalities of its series, sorted and joined with '\\' as DICOM does (e.g. "CT\\PT").
    modalities: Mapped[str] = mapped_column(String(64), default="")
    # Canonical English body part (store.body_parts), '' when unknown.
    body_part: Mapped[str] = mapped_column(String(64), default="")
    # 'local' (files in the store) or 'dicomweb' (fetched from the PACS on demand).
    source: Mapped[str] = mapped_column(String(16), default="local")
    series_count: Mapped[int] = mapped_column(Integer, default=0)
    instance_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    patient: Mapped[Patient] = relationship(back_populates="studies")
    series: Mapped[list[Series]] = relationship(
        back_populates="study", cascade="all, delete-orphan", passive_deletes=True
    )
    modality_rows: Mapped[list[StudyModality]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )


class StudyModality(Base):
    """One modality of a study, denormalised with the patient and date for the 'latest MR' query."""

    __tablename__ = "study_modality"
    __table_args__ = (Index("ix_study_modality_lookup", "patient_id", "modality", "study_date"),)

    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), primary_key=True)
    modality: Mapped[str] = mapped_column(String(16), primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"))
    study_date: Mapped[date | None] = mapped_column(Date, nullable=True)


class Series(Base):
    """One series of a study."""

    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    series_uid: Mapped[str] = mapped_column(String(64), unique=True)
    modality: Mapped[str] = mapped_column(String(16), default="")
    series_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    description: Mapped[str] = mapped_column(String(256), default="")
    body_part: Mapped[str] = mapped_column(String(64), default="")
    # axial | sagittal | coronal | oblique | unknown (imaging.geometry.plane_from_orientation)
    plane: Mapped[str] = mapped_column(String(16), default="unknown")
    contrast: Mapped[str] = mapped_column(String(64), default="")
    slice_thickness: Mapped[float | None] = mapped_column(Float, nullable=True)
    instance_count: Mapped[int] = mapped_column(Integer, default=0)
    frame_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(
        back_populates="series", cascade="all, delete-orphan", passive_deletes=True
    )


class Instance(Base):
    """One DICOM object (image, report...). ``storage_key`` is an opaque name inside the file store."""

    __tablename__ = "instance"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64), default="")
    instance_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Position along the slice normal in mm (imaging.geometry.slice_location); None without geometry.
    slice_location: Mapped[float | None] = mapped_column(Float, nullable=True)
    number_of_frames: Mapped[int] = mapped_column(Integer, default=1)
    rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    columns: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pixel_spacing: Mapped[str] = mapped_column(String(64), default="")
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64), default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    storage_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # For the DICOMweb source: where to fetch it when not cached locally.
    remote_url: Mapped[str] = mapped_column(String(512), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    series: Mapped[Series] = relationship(back_populates="instances")


class ShareLink(Base):
    """A time-limited, revocable link to a study (or chosen series). Only the token's SHA-256 is stored."""

    __tablename__ = "share_link"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"), index=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # JSON list of series public ids; empty means the whole study.
    series_scope: Mapped[str] = mapped_column(Text, default="")
    include_priors: Mapped[bool] = mapped_column(Boolean, default=False)
    recipient_label: Mapped[str] = mapped_column(String(128), default="")
    # original | deidentified | none
    download: Mapped[str] = mapped_column(String(16), default="none")
    access_code_hash: Mapped[str] = mapped_column(String(128), default="")
    failed_code_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    max_views: Mapped[int | None] = mapped_column(Integer, nullable=True)
    view_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    first_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Whether this link lets its holder (the patient) add annotations in the viewer.
    can_annotate: Mapped[bool] = mapped_column(Boolean, default=False)


class Annotation(Base):
    """A note, arrow, circle or marker on one frame, in normalised image coordinates (0..1)."""

    __tablename__ = "annotation"
    __table_args__ = (Index("ix_annotation_instance_frame", "instance_id", "frame"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"), index=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instance.id", ondelete="CASCADE"))
    frame: Mapped[int] = mapped_column(Integer, default=0)
    # note | marker | arrow | circle
    kind: Mapped[str] = mapped_column(String(16))
    x: Mapped[float | None] = mapped_column(Float, nullable=True)
    y: Mapped[float | None] = mapped_column(Float, nullable=True)
    x2: Mapped[float | None] = mapped_column(Float, nullable=True)
    y2: Mapped[float | None] = mapped_column(Float, nullable=True)
    text: Mapped[str] = mapped_column(Text, default="")
    # patient | share:<share public id>
    author: Mapped[str] = mapped_column(String(64), default="patient")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AccessEvent(Base):
    """One access to a patient's data: who (chat or share link), what, when. The patient can read these."""

    __tablename__ = "access_event"
    __table_args__ = (Index("ix_access_event_patient_at", "patient_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # chat | share | operator | system
    actor_kind: Mapped[str] = mapped_column(String(16))
    # An opaque reference: chat_link id, share link public id, 'cli'.
    actor_ref: Mapped[str] = mapped_column(String(64), default="")
    # view | render | import | share_create | share_open | share_view | download | share_revoke | delete | export
    action: Mapped[str] = mapped_column(String(32))
    study_id: Mapped[int | None] = mapped_column(ForeignKey("study.id", ondelete="SET NULL"), nullable=True)
    series_id: Mapped[int | None] = mapped_column(ForeignKey("series.id", ondelete="SET NULL"), nullable=True)
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("instance.id", ondelete="SET NULL"), nullable=True)
    share_link_id: Mapped[int | None] = mapped_column(
        ForeignKey("share_link.id", ondelete="SET NULL"), nullable=True
    )
    # Short, PHI-free detail (e.g. "frame 12", "deidentified zip").
    detail: Mapped[str] = mapped_column(String(256), default="")


# Scale-path state tables (persistence, webhook inbox, chat leases, jobs) share this metadata.
from store import models_state as models_state  # noqa: E402
