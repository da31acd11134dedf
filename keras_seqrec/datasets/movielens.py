"""Loaders for the MovieLens family: the bundled ml-latest-small and the GroupLens releases."""

from __future__ import annotations

import dataclasses
import os
from importlib import resources
from typing import Callable, Optional

import numpy as np
import pandas as pd

from keras_seqrec.datasets.interactions import (
    ITEM,
    RATING,
    TIMESTAMP,
    USER,
    Interactions,
    PathLike,
)

DATA_DIR_ENV = "KERAS_SEQREC_DATA"
GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/"


@dataclasses.dataclass(frozen=True)
class _Release:
    folder: str  # folder inside the GroupLens zip
    ratings: str
    movies: str
    reader: str  # "csv", "dat" or "100k"
    sha256: Optional[str]  # of the zip; None where GroupLens publishes none we could verify


# sha256 of the zip files as published by GroupLens (the same values TFDS pins).
RELEASES = {
    "ml-latest-small": _Release(
        "ml-latest-small", "ratings.csv", "movies.csv", "csv",
        "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
    ),
    "ml-100k": _Release(
        "ml-100k", "u.data", "u.item", "100k",
        "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
    ),
    "ml-1m": _Release(
        "ml-1m", "ratings.dat", "movies.dat", "dat",
        "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
    ),
    "ml-10m": _Release("ml-10M100K", "ratings.dat", "movies.dat", "dat", None),
    "ml-20m": _Release(
        "ml-20m", "ratings.csv", "movies.csv", "csv",
        "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
    ),
    "ml-25m": _Release(
        "ml-25m", "ratings.csv", "movies.csv", "csv",
        "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
    ),
    "ml-32m": _Release("ml-32m", "ratings.csv", "movies.csv", "csv", None),
}


def available_datasets() -> list[str]:
    """Names accepted by `load`."""
    return list(RELEASES)


def bundled_path() -> str:
    """Folder of the bundled ml-latest-small files (ratings, movies and the license README)."""
    return str(resources.files("keras_seqrec.datasets") / "bundled" / "ml-latest-small")


def _find_local(release: _Release, data_dir: Optional[PathLike]) -> Optional[str]:
    roots = [os.fspath(data_dir)] if data_dir is not None else []
    if os.environ.get(DATA_DIR_ENV):
        roots.append(os.environ[DATA_DIR_ENV])
    for root in roots:
        for folder in (root, os.path.join(root, release.folder)):
            if os.path.exists(os.path.join(folder, release.ratings)):
                return folder
    return None


def _download(name: str, release: _Release) -> str:
    import keras

    try:
        archive = keras.utils.get_file(
            fname=f"{name}.zip",
            origin=f"{GROUPLENS_URL}{name}.zip",
            file_hash=release.sha256,
            hash_algorithm="sha256",
            extract=True,
            cache_subdir=os.path.join("datasets", "keras_seqrec"),
        )
    except Exception as err:  # no network, proxy, bad checksum...
        raise OSError(
            f"Could not download {name} from GroupLens ({err}). Without network access, "
            f"download {GROUPLENS_URL}{name}.zip elsewhere, unzip it, and pass the folder that "
            f"holds `{release.ratings}` as `data_dir=` (CLI: --data-dir), or set the "
            f"{DATA_DIR_ENV} environment variable to it."
        ) from err
    # Keras >= 3.6 returns the extraction folder; older versions return the archive path.
    candidates = [archive, os.path.dirname(archive), archive + "_extracted"]
    for base in candidates:
        for folder in (base, os.path.join(base, release.folder)):
            if os.path.exists(os.path.join(folder, release.ratings)):
                return folder
    raise OSError(f"Downloaded {name} but found no {release.ratings} under {archive!r}.")


def _read_csv_release(folder: str, release: _Release) -> tuple[pd.DataFrame, pd.DataFrame]:
    ratings = pd.read_csv(
        os.path.join(folder, release.ratings),
        dtype={"userId": np.int64, "movieId": np.int64, "rating": np.float32,
               "timestamp": np.int64},
    )
    ratings.columns = [USER, ITEM, RATING, TIMESTAMP]
    movies = pd.read_csv(os.path.join(folder, release.movies))
    movies = movies.rename(columns={"movieId": ITEM}).set_index(ITEM)
    movies["genres"] = movies["genres"].str.split("|")
    return ratings, movies


def _read_dat_release(folder: str, release: _Release) -> tuple[pd.DataFrame, pd.DataFrame]:
    # '::'-separated; reading with ':' keeps pandas' fast C parser (empty fields in between).
    ratings = pd.read_csv(
        os.path.join(folder, release.ratings), sep=":", header=None,
        usecols=[0, 2, 4, 6], names=["u", "_1", "i", "_2", "r", "_3", "t"],
        dtype={"u": np.int64, "i": np.int64, "r": np.float32, "t": np.int64},
    )
    ratings.columns = [USER, ITEM, RATING, TIMESTAMP]
    return ratings, read_movies_dat(os.path.join(folder, release.movies))


def read_movies_dat(path: PathLike) -> pd.DataFrame:
    """ML-1M's `movies.dat` (`id::title::genre|genre`) as an items frame indexed by movie id,
    with `title` and `genres` (a list per movie), as `load(...).items` gives it."""
    movies = pd.read_csv(path, sep="::", engine="python", header=None,
                         names=[ITEM, "title", "genres"], encoding="latin-1").set_index(ITEM)
    movies["genres"] = movies["genres"].str.split("|")
    return movies


_GENRES_100K = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
]


def _read_100k_release(folder: str, release: _Release) -> tuple[pd.DataFrame, pd.DataFrame]:
    ratings = pd.read_csv(
        os.path.join(folder, release.ratings), sep="\t", header=None,
        names=[USER, ITEM, RATING, TIMESTAMP],
        dtype={USER: np.int64, ITEM: np.int64, RATING: np.float32, TIMESTAMP: np.int64},
    )
    raw = pd.read_csv(
        os.path.join(folder, release.movies), sep="|", header=None, encoding="latin-1",
    )
    flags = raw.iloc[:, 5:5 + len(_GENRES_100K)].to_numpy(dtype=bool)
    movies = pd.DataFrame(
        {
            ITEM: raw[0].to_numpy(np.int64),
            "title": raw[1].to_numpy(),
            "genres": [[g for g, on in zip(_GENRES_100K, row) if on] for row in flags],
        }
    ).set_index(ITEM)
    return ratings, movies


_READERS: dict[str, Callable[[str, _Release], tuple[pd.DataFrame, pd.DataFrame]]] = {
    "csv": _read_csv_release,
    "dat": _read_dat_release,
    "100k": _read_100k_release,
}


def load(
    name: str = "ml-latest-small", data_dir: Optional[PathLike] = None, download: bool = True
) -> Interactions:
    """Load a MovieLens release as `Interactions` with ratings, timestamps, titles and genres.

    `ml-latest-small` ships inside the package and loads offline. For the others the files are
    looked up in `data_dir` (the folder holding the ratings file, or its parent), then in the
    folder named by the `KERAS_SEQREC_DATA` environment variable, then downloaded from GroupLens
    into the Keras cache (`~/.keras/datasets/keras_seqrec`) with a progress bar and a sha256
    check.

    Args:
        name: one of `available_datasets()`.
        data_dir: optional folder with the unzipped release.
        download: set False to fail instead of downloading.

    Returns:
        `Interactions` whose `items` frame holds `title` and `genres` (a list per movie).

    Example:

    >>> log = load("ml-latest-small")
    >>> log.num_users, log.num_items, len(log)
    (610, 9724, 100836)
    """
    if name not in RELEASES:
        import difflib

        close = difflib.get_close_matches(name, RELEASES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"Unknown dataset {name!r}. Known MovieLens datasets: {', '.join(RELEASES)}.{hint} "
            "For other logs use `read_log(path)` or `read_sequences(path)`."
        )
    release = RELEASES[name]
    folder = _find_local(release, data_dir)
    if folder is None and name == "ml-latest-small":
        folder = bundled_path()
    if folder is None:
        if not download:
            raise FileNotFoundError(
                f"{name} not found in data_dir={data_dir!r} or ${DATA_DIR_ENV}; put the "
                f"unzipped release (with `{release.ratings}`) there, or allow downloading."
            )
        folder = _download(name, release)
    ratings, movies = _READERS[release.reader](folder, release)
    return Interactions(frame=ratings[[USER, ITEM, TIMESTAMP, RATING]], items=movies, name=name)
