"""StageNode: a lifecycle node around a core stage (configure loads it, activate subscribes,
deactivate pauses, cleanup releases)."""
from __future__ import annotations

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from fer3d_ros.nodes.diagnostics import Diagnostics
from fer3d_ros.nodes.parameters import (
    LifecycleSettings,
    NodeSettings,
    declare_process_settings,
)
from fer3d_ros.nodes.qos import RELIABLE_QOS


class StageNode(LifecycleNode):
    """A fer3d_ros node: a lifecycle node around one core stage.

    At construction it declares its parameters (`library_threads`, `autostart`, its stage's
    settings); `configure` builds the stage (loads and checks the model files) and the outputs,
    `activate` subscribes to the inputs, `deactivate` unsubscribes (the work stops; a robot pauses
    the expensive part), `cleanup` releases the stage. With `autostart` (default) the node configures
    and activates itself once constructed, so `ros2 run` and `ros2 launch` need no lifecycle manager;
    a stage that cannot be built then stops the node at start with the reason. Subclasses set
    `settings_class`, implement make_stage, make_outputs and make_inputs, and call `start()` last.
    """

    settings_class: type               # the stage's settings
    input_settings_class: type | None = None  # the inputs' (ROS side), if any
    output_settings_class: type | None = None  # what else it publishes (ROS side, read at start), if any

    def __init__(self, name: str, **kwargs) -> None:
        super().__init__(name, **kwargs)
        self.stage = None
        self._inputs: list = []   # what activate made: subscriptions (or objects with a close())
        self._outputs: list = []  # what configure made: publishers, services
        self._failure = ''
        declare_process_settings(self)
        self.autostart = NodeSettings(self, LifecycleSettings).value.autostart
        self.settings = NodeSettings(self, self.settings_class, self._apply_settings)
        self.input_settings = NodeSettings(self, self.input_settings_class, self._apply_input_settings) \
            if self.input_settings_class else None
        self.output_settings = NodeSettings(self, self.output_settings_class).value \
            if self.output_settings_class else None
        self.diagnostics = Diagnostics(self, state=self.state_label)

    def make_stage(self):
        """The core stage, built from self.settings.value (models loaded and checked)."""
        raise NotImplementedError

    def make_outputs(self) -> list:
        """Publishers and services (made on configure)."""
        return []

    def make_inputs(self) -> list:
        """Subscriptions (made on activate)."""
        return []

    def people_forgotten_input(self):
        """face_node's announcements of forgotten people: their state here goes too."""
        def on_forgotten(msg) -> None:
            if self.stage is not None:
                self.stage.forget_person(msg.data)
        from std_msgs.msg import String
        return self.create_subscription(String, 'people/forgotten', on_forgotten, RELIABLE_QOS)

    def _apply_settings(self, settings) -> None:
        if self.stage is not None:
            self.stage.apply(settings)

    def _apply_input_settings(self, settings) -> None:
        """Dynamic input settings reach whatever of the active inputs has an apply()."""
        for entity in self._inputs:
            if hasattr(entity, 'apply'):
                entity.apply(settings)

    def start(self) -> None:
        """Configure and activate now if `autostart`; RuntimeError with the reason if the stage cannot be built."""
        if not self.autostart:
            self.get_logger().info('autostart is false: waiting for a lifecycle manager (configure, activate)')
            return
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise RuntimeError(self._failure or 'configure failed')
        self.trigger_activate()

    def state_label(self) -> str:
        """The lifecycle state ('unconfigured', 'inactive', 'active', ...), with why configure failed."""
        label = self._state_machine.current_state[1]
        return f'{label} (configure failed: {self._failure})' if self._failure and label == 'unconfigured' else label

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.stage = self.make_stage()
            self._outputs = self.make_outputs()
        except Exception as error:  # noqa: BLE001 - any reason the stage cannot run is said the same way
            self._failure = str(error)
            self.get_logger().error(f'cannot configure: {error}')
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._failure = ''
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._inputs = self.make_inputs()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._close_inputs()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _close_inputs(self) -> None:
        for entity in self._inputs:
            if hasattr(entity, 'close'):
                entity.close()
            else:
                self.destroy_subscription(entity)
        self._inputs = []

    def _release(self) -> None:
        self._close_inputs()
        for entity in self._outputs:
            if hasattr(entity, 'close'):  # a group of publishers (nodes/ros4hri.py)
                entity.close()
            else:
                (self.destroy_publisher if hasattr(entity, 'publish') else self.destroy_service)(entity)
        self._outputs = []
        if hasattr(self.stage, 'close'):
            self.stage.close()
        self.stage = None

    def destroy_node(self) -> None:
        self._release()
        # rclpy's LifecycleNode never destroys its state machine, which keeps the node's handle, and so
        # its DDS participant, alive after the node and its context are gone.
        self._state_machine.destroy_when_not_in_use()
        super().destroy_node()
