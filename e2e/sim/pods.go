package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
)

// hostIP is status.hostIP of every pod: the one simulated node.
const hostIP = "127.0.0.1"

// maxAddrTries bounds how many addresses a pod start skips because another
// process holds a port there.
const maxAddrTries = 256

// suffix returns 5 random lowercase alphanumerics, like generateName.
func suffix() string {
	const chars = "bcdfghjklmnpqrstvwxz2456789"
	b := make([]byte, 5)
	for i := range b {
		b[i] = chars[rand.IntN(len(chars))]
	}
	return string(b)
}

// bindPodBackend makes a backend for a pod bound to the next free
// loopback address, not listening yet.
func (s *Sim) bindPodBackend(namespace, pod, sandbox string) (*backend, error) {
	var last error
	for range maxAddrTries {
		ip, err := s.allocIP()
		if err != nil {
			return nil, err
		}
		b, err := bindBackend(ip, s.ports, s.opts.GRPCPorts, namespace, pod, sandbox, s.logf)
		if err == nil {
			b.onChange = s.broadcast
			return b, nil
		}
		if !isAddrInUse(err) {
			return nil, fmt.Errorf("backend of pod %s/%s: %w", namespace, pod, err)
		}
		last = err
	}
	return nil, fmt.Errorf("backend of pod %s/%s: no free address after %d tries: %w", namespace, pod, maxAddrTries, last)
}

// allocIP returns the next loopback address no pod of this process had.
func (s *Sim) allocIP() (netip.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		a := s.nextIP
		if !a.IsLoopback() {
			return netip.Addr{}, errors.New("out of loopback addresses")
		}
		s.nextIP = a.Next()
		if reserveAddr(a) {
			return a, nil
		}
	}
}

// portName names a container port.
func (s *Sim) portName(port uint16) string {
	if n := s.opts.PortNames[port]; n != "" {
		return n
	}
	if port == DefaultPort {
		return "http"
	}
	return "http-" + strconv.Itoa(int(port))
}

// podObject is the Pod the sim creates: what a sandbox controller would
// put in a pod template, scheduled to the one simulated node.
func (s *Sim) podObject(namespace, name string, labels map[string]string, owner *metav1.OwnerReference) *corev1.Pod {
	var ports []corev1.ContainerPort
	for _, p := range s.ports {
		ports = append(ports, corev1.ContainerPort{Name: s.portName(p), ContainerPort: int32(p), Protocol: corev1.ProtocolTCP})
	}
	grace := int64(30)
	automount := false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   namespace,
			Labels:      labels,
			Annotations: map[string]string{"sim.sandbox-router.dev/simulated": "true"},
		},
		Spec: corev1.PodSpec{
			NodeName:                      NodeName,
			RestartPolicy:                 corev1.RestartPolicyAlways,
			TerminationGracePeriodSeconds: &grace,
			AutomountServiceAccountToken:  &automount,
			Containers: []corev1.Container{{
				Name:            ContainerName,
				Image:           "sim",
				ImagePullPolicy: corev1.PullIfNotPresent,
				Ports:           ports,
				Env: []corev1.EnvVar{
					{Name: "SANDBOX_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
					{Name: "PORT", Value: strconv.Itoa(int(s.ports[0]))},
				},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{
						corev1.ResourceCPU:    resource.MustParse("100m"),
						corev1.ResourceMemory: resource.MustParse("128Mi"),
					},
					Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
				},
				ReadinessProbe: s.readinessProbe(),
				VolumeMounts:   []corev1.VolumeMount{{Name: "workspace", MountPath: "/workspace"}},
			}},
			Volumes: []corev1.Volume{{
				Name:         "workspace",
				VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}},
			}},
		},
	}
	if owner != nil {
		pod.OwnerReferences = []metav1.OwnerReference{*owner}
		pod.Spec.Containers[0].Env = append(pod.Spec.Containers[0].Env,
			corev1.EnvVar{Name: "SANDBOX_NAME", Value: owner.Name})
	}
	return pod
}

// ownerRef is the controller reference of a sandbox's pods.
func (s *Sim) ownerRef(v sandboxView) *metav1.OwnerReference {
	yes, no := true, false
	return &metav1.OwnerReference{
		APIVersion:         Group + "/" + s.gvr.Version,
		Kind:               "Sandbox",
		Name:               v.name,
		UID:                v.uid,
		Controller:         &yes,
		BlockOwnerDeletion: &no,
	}
}

// readinessProbe is the readiness probe of the pods' container.
func (s *Sim) readinessProbe() *corev1.Probe {
	if s.kubelet != nil {
		return s.kubelet.probeSpec(s.portName(s.ports[0]), s.ports[0])
	}
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: "/", Port: intstr.FromInt32(int32(s.ports[0])),
		}},
		PeriodSeconds: 2,
	}
}

// createPod makes a backend and creates its Pod object. The pod is
// registered, so Close stops its backend. With kubelet (Kubelet mode) the
// backend only holds its address, and the reconcile plays the start
// sequence from here; otherwise it listens before the Pod object exists.
func (s *Sim) createPod(ctx context.Context, namespace, name, sandbox string, labels map[string]string, owner *metav1.OwnerReference, kubelet bool) (*podState, error) {
	b, err := s.bindPodBackend(namespace, name, sandbox)
	if err != nil {
		return nil, err
	}
	if kubelet {
		b.initDelay, b.manualInit = s.kubelet.InitDelay, s.kubelet.ManualInit
	} else if err := b.listen(); err != nil {
		b.stop()
		return nil, err
	}
	created, err := s.cs.CoreV1().Pods(namespace).Create(ctx, s.podObject(namespace, name, labels, owner), metav1.CreateOptions{})
	if err != nil {
		b.stop()
		return nil, fmt.Errorf("create pod %s/%s: %w", namespace, name, err)
	}
	now := time.Now()
	p := &podState{
		namespace: namespace,
		name:      name,
		uid:       created.UID,
		ip:        b.ip,
		backend:   b,
		startedAt: now.Add(s.opts.StartDelay),
		kubelet:   kubelet,
		gone:      make(chan struct{}),
	}
	p.kubeletCtx, p.stopKubelet = context.WithCancel(s.ctx)
	if kubelet {
		p.addressDue = now.Add(s.kubelet.AddressDelay)
	}
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.pods[p.uid] = p
		s.stats[namespace+"/"+name] = b.stats
	}
	s.mu.Unlock()
	if closed {
		p.stop()
		return nil, errors.New("sim: closed")
	}
	s.logf("sim: pod %s/%s created (uid %s) on %s", namespace, name, p.uid, p.ip)
	return p, nil
}

// removePod stops the pod's backend and deletes the Pod object at once
// (grace period 0, as the kubelet confirms a deletion). A pod already gone
// is not an error.
func (s *Sim) removePod(ctx context.Context, p *podState) error {
	p.stop()
	s.mu.Lock()
	delete(s.pods, p.uid)
	s.mu.Unlock()
	if err := s.forceDelete(ctx, p.namespace, p.name, p.uid); err != nil {
		return err
	}
	s.mu.Lock()
	s.removed[p.uid] = true
	s.mu.Unlock()
	s.logf("sim: pod %s/%s deleted (backend %s stopped)", p.namespace, p.name, p.ip)
	return nil
}

// forceDelete deletes the pod with this UID with grace period 0.
func (s *Sim) forceDelete(ctx context.Context, namespace, name string, uid types.UID) error {
	zero := int64(0)
	err := s.cs.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete pod %s/%s: %w", namespace, name, err)
	}
	return nil
}

// writePodReady writes the pod's status as a kubelet does once its
// container runs and passes its readiness probe, and marks p Ready (the
// caller holds p's owner's lock). It returns when the last (successful)
// write request was sent.
func (s *Sim) writePodReady(ctx context.Context, p *podState) (sentAt time.Time, err error) {
	sentAt, err = s.writePodStatus(ctx, p, func(st *corev1.PodStatus, start, now metav1.Time) {
		st.Phase = corev1.PodRunning
		st.Conditions = []corev1.PodCondition{
			{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue, LastTransitionTime: start},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: start},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: start},
		}
		started := true
		st.ContainerStatuses = []corev1.ContainerStatus{{
			Name:         ContainerName,
			Image:        "sim",
			ImageID:      containerImageID,
			ContainerID:  "sim://" + string(p.uid),
			Ready:        true,
			Started:      &started,
			RestartCount: 0,
			State:        corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: start}},
		}}
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("write Ready status of pod %s/%s: %w", p.namespace, p.name, err)
	}
	p.ready, p.readySentAt = true, sentAt
	s.logf("sim: pod %s/%s Ready with IP %s", p.namespace, p.name, p.ip)
	return sentAt, nil
}

// containerImageID is the imageID of every container status.
const containerImageID = "sim@sha256:0000000000000000000000000000000000000000000000000000000000000000"

// writePodStatus writes the pod's status with its address (podIP,
// hostIP, startTime) and what set adds, given the pod's creation time
// and now. It returns when the last (successful) write request was sent.
func (s *Sim) writePodStatus(ctx context.Context, p *podState, set func(st *corev1.PodStatus, start, now metav1.Time)) (sentAt time.Time, err error) {
	pods := s.cs.CoreV1().Pods(p.namespace)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pod, err := pods.Get(ctx, p.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if pod.UID != p.uid {
			return fmt.Errorf("pod %s/%s was replaced", p.namespace, p.name)
		}
		start := pod.CreationTimestamp
		ip := p.ip.String()
		st := &pod.Status
		st.HostIP, st.HostIPs = hostIP, []corev1.HostIP{{IP: hostIP}}
		st.PodIP, st.PodIPs = ip, []corev1.PodIP{{IP: ip}}
		st.StartTime = &start
		set(st, start, metav1.Now())
		sentAt = time.Now()
		_, err = pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		return err
	})
	return sentAt, err
}
