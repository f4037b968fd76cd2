"""ament_python packaging: ``colcon build`` on a ROS 2 install, ``pip install -e .`` elsewhere."""

from glob import glob

from setuptools import find_packages, setup

package_name = "evseg_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=[package_name, f"{package_name}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"config/resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", glob("launch/*.launch.py")),
        (f"share/{package_name}/config", glob("config/*.yaml") + glob("config/*.xml")
         + glob("config/*.rviz")),
        (f"share/{package_name}/config/calibration", glob("config/calibration/*.yaml")),
        (f"share/{package_name}/config/train", glob("config/train/*.yaml")),
        (f"share/{package_name}/models", glob("models/*.onnx") + glob("models/*.pt")
         + glob("models/*.md") + glob("models/*.json")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="evseg_ros maintainers",
    maintainer_email="maintainers@evseg.invalid",
    description="Semantic segmentation for a coaxial event + frame camera rig on ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "evk4_driver = evseg_ros.nodes.evk4_driver:main",
            "flir_driver = evseg_ros.nodes.flir_driver:main",
            "accumulator = evseg_ros.nodes.accumulator:main",
            "segmentation = evseg_ros.nodes.segmentation:main",
            "recorder = evseg_ros.nodes.recorder:main",
            "evseg = evseg_ros.cli:main",
        ],
    },
    # what setup.cfg's [develop]/[install] sections do in ros2/examples: colcon's
    # `setup.py install` puts the scripts in lib/<package>, where `ros2 run evseg_ros <node>` and
    # launch_ros look. A PEP 660 editable install (`pip install --no-deps -e .`, what
    # scripts/bootstrap.sh does) does not read these: its scripts go to the venv's bin/.
    options={
        "develop": {"script_dir": f"$base/lib/{package_name}"},
        "install": {"install_scripts": f"$base/lib/{package_name}"},
    },
)
