"""Dataset archives (core.archive) on real photos: an exported archive imports whole, and
hostile archives built here (traversal, bomb, foreign file, hash mismatch, duplicate,
symlink, ...) are refused member by member, nothing of a refused member reaching ``store``."""
from __future__ import annotations

import hashlib
import io
import json
import stat
import warnings
import zipfile
from pathlib import Path

import pytest

from gesture_classifier.core.archive import (FORMAT, MANIFEST, MAX_MEMBER_BYTES, MAX_MEMBERS,
                                             MAX_TOTAL_BYTES, ArchiveError, ArchiveWriter,
                                             check_member_name, import_archive)

THUMBS = Path(__file__).resolve().parents[3] / 'shared' / 'data' / 'thumbs_wincle626'
CLASSES = ('thumbs_up', 'thumbs_down')


@pytest.fixture(scope='module')
def photos() -> list[tuple[str, str, bytes]]:
    """(label, name, bytes) of 4 real photos per class."""
    if not THUMBS.is_dir():
        pytest.skip(f'shared test data not found: {THUMBS}')
    out = []
    for label in CLASSES:
        for path in sorted((THUMBS / label).glob('*.jpg'))[:4]:
            out.append((label, path.name, path.read_bytes()))
    assert len(out) == 8
    return out


def exported(photos) -> bytes:
    """An archive as the page exports it, written through the streaming writer."""
    w = ArchiveWriter()
    parts = []
    for label, name, data in photos:
        w.add(label, name, data)
        parts.append(w.drain())
    parts.append(w.close('thumbs', CLASSES))
    return b''.join(parts)


def run_import(blob: bytes, classes=CLASSES):
    stored = []

    def store(member, data, fmt):
        stored.append((member.path, data, fmt))
        return ''
    report = import_archive(io.BytesIO(blob), classes, store)
    return report, stored


def entry(path: str, data: bytes) -> dict:
    return {'path': path, 'size': len(data), 'sha256': hashlib.sha256(data).hexdigest()}


def hostile(members: list[tuple], manifest_files: list[dict] | None = None,
            compression=zipfile.ZIP_STORED) -> bytes:
    """A zip of ``members`` ((name, data) or (ZipInfo, data)) and a manifest listing
    ``manifest_files`` (default: every member as it is)."""
    buf = io.BytesIO()
    files = manifest_files if manifest_files is not None else [
        entry(m if isinstance(m, str) else m.filename, d) for m, d in members]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # zipfile warns about duplicate names: wanted here
        with zipfile.ZipFile(buf, 'w', compression) as zf:
            for m, d in members:
                zf.writestr(m, d)
            zf.writestr(MANIFEST, json.dumps({'format': FORMAT, 'task': 'thumbs',
                                              'classes': list(CLASSES), 'files': files}))
    return buf.getvalue()


def kinds(report) -> dict[str, str]:
    return {r.path: r.kind for r in report.refused}


def test_an_exported_archive_holds_the_photos_and_a_manifest_and_imports_whole(photos):
    blob = exported(photos)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        manifest = json.loads(zf.read(MANIFEST))
        assert manifest['task'] == 'thumbs' and manifest['classes'] == list(CLASSES)
        assert [f['path'] for f in manifest['files']] == [f'{lb}/{n}' for lb, n, _ in photos]
        for f, (_, _, data) in zip(manifest['files'], photos):
            assert zf.read(f['path']) == data
            assert f['size'] == len(data)
            assert f['sha256'] == hashlib.sha256(data).hexdigest()
    report, stored = run_import(blob)
    assert report.added == 8 and report.refused == []
    assert [(p, d) for p, d, _ in stored] == [(f'{lb}/{n}', d) for lb, n, d in photos]
    assert {fmt for _, _, fmt in stored} == {'jpeg'}
    assert report.to_dict() == {'added': 8, 'refused': 0, 'by_kind': {}, 'refusals': []}


@pytest.mark.parametrize('name', [
    '../thumbs_up/a.jpg', 'thumbs_up/../../a.jpg', '/etc/thumbs_up/a.jpg', '/thumbs_up/a.jpg',
    'thumbs_up\\a.jpg', '..\\..\\a.jpg', 'C:/thumbs_up/a.jpg', 'thumbs_up//a.jpg',
    'thumbs_up/./a.jpg', 'thumbs_up/sub/a.jpg', 'a.jpg', 'cats/a.jpg', 'thumbs_up/.hidden.jpg',
    'thumbs_up/a.exe', 'thumbs_up/a.jpg.sh', 'thumbs_up/a b\nc.jpg', 'Thumbs_up/a.jpg'])
def test_member_names_other_than_class_slash_safe_image_are_refused(name):
    with pytest.raises(ValueError):
        check_member_name(name, CLASSES)


def test_good_member_names_pass():
    assert check_member_name('thumbs_up/1a2b.jpg', CLASSES) == ('thumbs_up', '1a2b.jpg')
    assert check_member_name('thumbs_down/IMG (2).JPEG', CLASSES)[1] == 'IMG (2).JPEG'
    assert check_member_name('thumbs_down/x.png', CLASSES)[0] == 'thumbs_down'


def test_path_traversal_is_refused_and_the_good_members_still_imported(photos):
    (label, name, data), evil = photos[0], photos[1][2]
    blob = hostile([(f'{label}/{name}', data), ('../../etc/evil.jpg', evil),
                    ('/abs/thumbs_up/x.jpg', evil), ('thumbs_up\\y.jpg', evil)])
    report, stored = run_import(blob)
    assert report.added == 1 and [p for p, _, _ in stored] == [f'{label}/{name}']
    assert set(kinds(report).values()) == {'name'} and len(report.refused) == 3


def test_a_zip_bomb_is_refused_without_being_inflated():
    bomb = b'\0' * (MAX_MEMBER_BYTES - 1)  # deflates about 1000:1
    blob = hostile([('thumbs_up/bomb.jpg', bomb)], compression=zipfile.ZIP_DEFLATED)
    assert len(blob) < MAX_MEMBER_BYTES // 100
    report, stored = run_import(blob)
    assert stored == [] and kinds(report) == {'thumbs_up/bomb.jpg': 'bomb'}


def test_a_header_that_understates_the_size_is_not_trusted(photos):
    """A member whose local data is larger than its central directory and manifest say:
    read at most the declared size plus one byte, then refused."""
    label, name, data = photos[0]
    small = data[:1000]
    blob = bytearray(hostile([(f'{label}/{name}', data + data)],
                             [entry(f'{label}/{name}', small)]))
    # rewrite the central directory's uncompressed size of the member (offset 24) to 1000
    cd = blob.find(b"PK\x01\x02")  # the first entry: the member
    blob[cd + 24:cd + 28] = (1000).to_bytes(4, 'little')
    blob[cd + 20:cd + 24] = (1000).to_bytes(4, 'little')  # and the compressed size
    report, stored = run_import(bytes(blob))
    assert stored == [] and len(report.refused) == 1, report.refused
    assert report.refused[0].kind in ('size', 'hash', 'unreadable')


def test_too_many_members_or_declared_bytes_refuse_the_whole_archive():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as zf:
        for i in range(MAX_MEMBERS + 1):
            zf.writestr(f'thumbs_up/{i}.jpg', b'')
    with pytest.raises(ArchiveError, match='members'):
        run_import(buf.getvalue())
    # one member declaring more than the total (the header only: it is never read)
    blob = bytearray(hostile([('thumbs_up/a.jpg', b'\xff\xd8\xff' + bytes(100))]))
    cd = blob.find(b'PK\x01\x02')
    blob[cd + 24:cd + 28] = (MAX_TOTAL_BYTES + 1).to_bytes(4, 'little')
    with pytest.raises(ArchiveError, match='declare'):
        run_import(bytes(blob))


def test_foreign_files_are_refused(photos):
    label, name, data = photos[0]
    script = b'#!/bin/sh\nrm -rf ~\n'
    blob = hostile([(f'{label}/{name}', data), ('thumbs_up/run.sh', script),
                    ('thumbs_up/fake.jpg', script),       # listed, but not an image
                    ('thumbs_up/extra.jpg', data),        # an image, not listed
                    ('notes/', b''), ('thumbs_up/', b'')],  # a stray folder, a class folder
                   [entry(f'{label}/{name}', data), entry('thumbs_up/fake.jpg', script),
                    entry('thumbs_up/run.sh', script)])
    report, stored = run_import(blob)
    assert [p for p, _, _ in stored] == [f'{label}/{name}']
    assert kinds(report) == {'thumbs_up/run.sh': 'name', 'thumbs_up/fake.jpg': 'image',
                             'thumbs_up/extra.jpg': 'foreign', 'notes/': 'foreign'}


def test_a_hash_or_size_mismatch_stores_nothing_of_that_member(photos):
    (l1, n1, d1), (l2, n2, d2), (l3, n3, d3) = photos[:3]
    tampered = bytearray(d2)
    tampered[len(tampered) // 2] ^= 0xFF
    blob = hostile([(f'{l1}/{n1}', d1), (f'{l2}/{n2}', bytes(tampered)), (f'{l3}/{n3}', d3)],
                   [entry(f'{l1}/{n1}', d1), entry(f'{l2}/{n2}', d2),
                    entry(f'{l3}/{n3}', d3[:-1])])
    report, stored = run_import(blob)
    assert [p for p, _, _ in stored] == [f'{l1}/{n1}']
    assert kinds(report) == {f'{l2}/{n2}': 'hash', f'{l3}/{n3}': 'size'}


def test_duplicate_names_are_refused_all_copies(photos):
    (label, name, data), other = photos[0], photos[1][2]
    blob = hostile([(f'{label}/{name}', data), (f'{label}/{name}', other)],
                   [entry(f'{label}/{name}', data)])
    report, stored = run_import(blob)
    assert stored == []
    assert [r.kind for r in report.refused] == ['duplicate', 'duplicate']


def test_a_symlink_member_is_refused(photos):
    label, name, data = photos[0]
    link = zipfile.ZipInfo('thumbs_up/link.jpg')
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    blob = hostile([(f'{label}/{name}', data), (link, b'/etc/passwd')])
    report, stored = run_import(blob)
    assert [p for p, _, _ in stored] == [f'{label}/{name}']
    assert kinds(report) == {'thumbs_up/link.jpg': 'link'}


def test_a_member_missing_from_the_archive_is_reported(photos):
    label, name, data = photos[0]
    blob = hostile([], [entry(f'{label}/{name}', data)])
    report, stored = run_import(blob)
    assert stored == [] and kinds(report) == {f'{label}/{name}': 'missing'}


@pytest.mark.parametrize('blob, match', [
    (b'not a zip at all', 'not a zip'),
    (b'PK\x05\x06' + bytes(18), 'manifest'),  # an empty zip: no manifest
])
def test_no_zip_or_no_manifest_refuses_the_whole_archive(blob, match):
    with pytest.raises(ArchiveError, match=match):
        run_import(blob)


def test_a_malformed_manifest_refuses_the_whole_archive(photos):
    label, name, data = photos[0]
    for files in ([{'path': f'{label}/{name}', 'size': '12', 'sha256': 'x'}],
                  [entry(f'{label}/{name}', data)] * 2):
        with pytest.raises(ArchiveError):
            run_import(hostile([(f'{label}/{name}', data)], files))


def test_a_refusal_by_the_store_is_counted_with_its_reason(photos):
    blob = exported(photos[:2])
    report = import_archive(io.BytesIO(blob), CLASSES,
                            lambda m, d, f: 'too many requests' if m.name == photos[1][1]
                            else '')
    assert report.added == 1
    assert report.to_dict()['by_kind'] == {'collector': 1}


def test_the_writer_refuses_unsafe_or_repeated_names(photos):
    w = ArchiveWriter()
    w.add('thumbs_up', 'a.jpg', photos[0][2])
    for label, name in (('thumbs_up', 'a.jpg'), ('../x', 'a.jpg'), ('thumbs_up', '../a.jpg')):
        with pytest.raises(ValueError):
            w.add(label, name, photos[0][2])
